"""The simulated plant served over real device protocols, one module per protocol."""
