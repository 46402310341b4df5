"""leakscan: find leaked tokens in Hugging Face repos, their history and what they hold."""

__version__ = "0.1.0"

# The Python API (leakscan/api.py), imported on first use: `import leakscan` stays cheap.
# (`verify_findings`, not `verify`: that name is the leakscan.verify package.)
__all__ = ["Finding", "ScanError", "ScanResult", "Skip", "scan_bytes", "scan_path", "scan_repo", "verify_findings"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'leakscan' has no attribute {name!r}")
