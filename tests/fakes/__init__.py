"""Local stand-ins for remote services (Astria, chat platforms) that tests talk to over HTTP."""
