"""The fault suite (`referrals faults`, `make faults`): every service as separate processes (two
instances of attribution and rewards), a generated workload whose payouts are known in advance,
faults injected while it runs (SIGKILLs, a zombie, a broker restart, one broker of three lost,
the SMTP relay down, a corpus of bad input on every input topic), then a checker that reads
the topics and a report: nothing missing, nothing doubled, bad input dead-lettered, services up.

    workload   the referrals and their ground truth (expected payout ids and amounts)
    corpus     the bad-input corpus, produced raw (never through the validating publish path)
    inject     the processes and the faults: service fleet, mail catcher, finance, broker
    check      reads the topics back and counts missing, doubled, dead letters
    report     the fault report: a table, fault-report.json and fault-report.md
    suite      one run: scale, timeline of faults, waiting, checking
"""
