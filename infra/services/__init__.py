"""One module per service the local stack runs: how to start it and how to tell it is ready."""
