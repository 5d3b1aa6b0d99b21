"""The instruction set policies are written in: actions, bounded-queue slot rules, and the one
driver loop every backend steps a program with."""
