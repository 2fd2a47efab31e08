"""Layer 0 utilities: atomic writes, hashing, seeding, paths. They import nothing from dinobench but errors."""
