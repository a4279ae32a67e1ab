"""The bundled demo: synthetic deliveries shaped like the real published files, for every
contract, with a few realistic breaches."""
