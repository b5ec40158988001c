"""gemforge.gen: op specs, variant expansion, rendering, compiler drivers, manifest, tuning."""
