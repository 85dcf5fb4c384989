// Moved to src/testing/redis-server.ts so the scenario suite (npm run scenarios) can use it outside tap.
export * from '../../src/testing/redis-server'
