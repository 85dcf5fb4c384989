#!/usr/bin/env node
'use strict'
// Container health check: `node probe.js /healthz` (or /readyz) exits 0 when mxgate's admin API answers 200.
// Plain Node, no dependencies; the admin address comes from MXGATE_ADMIN_LISTEN's port (default 8025) on loopback.
const path = process.argv[2] || '/healthz'
const listen = process.env.MXGATE_ADMIN_LISTEN || '127.0.0.1:8025'
const port = Number(listen.slice(listen.lastIndexOf(':') + 1)) || 8025
const req = require('node:http').get({ host: '127.0.0.1', port, path, timeout: 2500 }, (res) => {
  res.resume()
  process.exit(res.statusCode === 200 ? 0 : 1)
})
req.on('timeout', () => req.destroy(new Error('timeout')))
req.on('error', (err) => {
  console.error(`mxgate probe ${path}: ${err.message}`)
  process.exit(1)
})
