"""Reference implementations the tests check the package's fast paths against (never imported by the package)."""
