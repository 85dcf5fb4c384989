// Moved to src/testing/mxgate-cluster.ts so the scenario suite (npm run scenarios) can use it outside tap.
export * from '../../src/testing/mxgate-cluster'
