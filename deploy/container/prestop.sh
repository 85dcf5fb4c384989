#!/bin/sh
# Kubernetes preStop hook: starts mxgate's drain and waits for it to end. SIGTERM to mxgate (PID 1 in its container;
# MXGATE_PID for tests) makes /readyz fail at once, keeps the listener open for [smtp] shutdown_grace so the load
# balancer notices, then closes it and lets the messages in flight finish. The hook returns when mxgate has exited,
# so the kubelet's own SIGTERM afterwards meets no process, and the pod's terminationGracePeriodSeconds bounds it all.
pid="${MXGATE_PID:-1}"
kill -TERM "$pid" 2>/dev/null || exit 0
while kill -0 "$pid" 2>/dev/null; do
  sleep 0.2
done
