"""Stream logic as plain functions and small classes; no Bytewax imports here."""
