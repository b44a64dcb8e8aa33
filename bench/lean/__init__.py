"""The parts of bench/lean_runtime.py (Agent Mesh vs the FastAPI reference):

    procfs.py     CPU, memory and children of a process, from /proc
    systems.py    the two systems under test: the mesh (`agentmesh up`) and the reference app
    data.py       tenants and agents: through the REST API, or straight into SQLite at scale
    load.py       wrk: the Lua reporting hook, one run measured, the alternating run matrix,
                  the floor (a bare grpc.aio handler behind the same gateway)
    report.py     the tables, the goals and the lines about the machine
"""
