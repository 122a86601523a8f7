"""Where mail comes in: the SMTP door and one handler per address role."""
