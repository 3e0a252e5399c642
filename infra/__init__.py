"""infra plane."""
