'use strict'
// Jest 30 projects for __tests__/fake-timers.test.mjs:
//   default-fakes    jest.useFakeTimers() with its defaults in beforeEach (the library loads first)
//   enable-globally  fakeTimers: { enableGlobally: true } (fakes on before the library loads)
// No transform (the bodies are plain CommonJS).
const base = { rootDir: __dirname, testEnvironment: 'node', transform: {}, testTimeout: 20000 }

module.exports = {
  projects: [
    { ...base, displayName: 'default-fakes', testMatch: ['<rootDir>/jest-default.jest.cjs'] },
    {
      ...base,
      displayName: 'enable-globally',
      testMatch: ['<rootDir>/jest-global.jest.cjs'],
      fakeTimers: { enableGlobally: true },
    },
  ],
}
