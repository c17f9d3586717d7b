"""Prompt suites: which prompts to generate videos for, and how the files must be named."""
