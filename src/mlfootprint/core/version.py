"""The package version, in one place every layer may import."""
__version__ = "0.1.0"


def installed_version(package: str) -> str | None:
    """The installed version of ``package`` from its metadata, without importing it; None where it is not
    installed. A build without package metadata (torch from source on the path) is asked for its ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        pass
    try:
        return str(__import__(package).__version__)
    except Exception:  # noqa: BLE001 - not importable: models that need it cannot be traced either
        return None
