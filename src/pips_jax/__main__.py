from pips_jax.cli import main

raise SystemExit(main())
