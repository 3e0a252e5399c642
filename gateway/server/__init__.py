"""The server: uvicorn, its protocols and the gateway command (README.md)."""
