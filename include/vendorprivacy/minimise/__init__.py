"""Field transforms, per-vendor identifier normalisers and eligibility rules."""
