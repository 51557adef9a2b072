"""Tools on top of everything: the `referrals` CLI, the local Kafka broker, the demo (a program
year), the simulator and the program report."""
