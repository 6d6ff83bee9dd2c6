"""Blocking git work on one checkout: update, repair, post_deploy, steps."""
