from layerclaims.cli import main

raise SystemExit(main())
