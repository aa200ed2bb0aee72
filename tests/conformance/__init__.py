"""The services of Restate's SDK conformance contracts, written with framework."""
