"""The MT5 bridge: the Windows-side process, its order client and the MetaTrader5 fake."""
