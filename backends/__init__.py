"""Where images are made: the Astria API client and our own Astria-compatible GPU worker."""
