"""The systems Tidings is compared with, as their users first write them."""
