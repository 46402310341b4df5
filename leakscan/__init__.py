"""leakscan: find leaked tokens in Hugging Face repos, their history and what they hold."""

__version__ = "0.1.0"
