"""`python -m app` opens the GUI."""

from app.main import main

raise SystemExit(main())
