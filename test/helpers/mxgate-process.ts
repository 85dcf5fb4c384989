// Moved to src/testing/mxgate-process.ts so the scenario suite (npm run scenarios) can use it outside tap.
export * from '../../src/testing/mxgate-process'
