from pdesurrogates.cli import main

raise SystemExit(main())
