"""Reference implementations the tests check the package's fast paths against, and cases with a known answer
(never imported by the package)."""
