"""Scoring renders: pixel, landmark, identity and sync metrics, the run protocol and the HTML report."""
