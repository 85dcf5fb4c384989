// Moved to src/testing/reaper.ts so the scenario suite (npm run scenarios) can use it outside tap.
export * from '../../src/testing/reaper'
