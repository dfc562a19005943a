"""One thin adapter per chat platform: parse input, call the service, render output."""
