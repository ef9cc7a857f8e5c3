"""Gossip between hubs: wire messages, the sans-io sync core, and the NATS adapter."""
