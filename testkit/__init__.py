"""What the tests and the benchmarks share: resources under a temporary root, generated image folders, the
production process topology and the monitoring-loop scenario. Not part of the product."""
