"""`referrals doctor`: one command that says whether a deployment is healthy, and if not, what is
wrong and how to fix it.

    checks.py      the list of checks and running them (broker first; exit 2 without it)
    probes.py      what is asked of the broker and the services' /readyz, as plain facts
    topicrules.py  the topics' rules: exist, partitions, replication, min ISR, configs
    verdicts.py    the programs', services' and consumer lag's rules
    targets.py     where each service is and what it consumes, from the services' own settings
    findings.py    findings, the report, its text and JSON forms, the exit status
"""
