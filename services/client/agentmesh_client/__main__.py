"""`python -m agentmesh_client`: the `agentmesh` command."""

import sys

from agentmesh_client.cli import main

sys.exit(main())
