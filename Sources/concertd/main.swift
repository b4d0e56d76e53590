import ArgumentParser
import ConcertAPI
print("x")
