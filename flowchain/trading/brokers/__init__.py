"""Brokers the trading step sends orders through: paper (simulated) and the MT5 bridge."""
