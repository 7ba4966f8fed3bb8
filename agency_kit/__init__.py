"""agency-kit: what each agency runs.  Installs and runs without Splink."""
