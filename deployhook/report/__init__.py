"""Telling the forge what a deploy did: commit statuses and GitHub Deployments.

One module per forge API builds the HTTP calls (pure, no I/O); :mod:`.reporter`
sends them in the background.
"""
