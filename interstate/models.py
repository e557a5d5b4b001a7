"""Interstate escalation (NENA EIDO over REST). Models arrive with the interstate issue."""
