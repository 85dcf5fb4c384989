// Haraka loads plugins in a vm sandbox; the real code is compiled TypeScript in dist/.
Object.assign(exports, require('../dist/haraka/plugin'))
