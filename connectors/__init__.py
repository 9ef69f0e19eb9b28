"""Sources and sinks, one module (or small package) per external system."""
