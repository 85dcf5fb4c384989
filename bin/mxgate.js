#!/usr/bin/env node
'use strict'
// The compiled CLI lives in dist/ (built by `npm ci` through the prepare script).
require('../dist/cli/main')
  .main(process.argv.slice(2))
  .then((code) => {
    if (code !== null) process.exit(code)
  })
  .catch((err) => {
    console.error(err)
    process.exit(1)
  })
