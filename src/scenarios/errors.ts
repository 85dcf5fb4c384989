// The scenario suite's own errors, told apart by class and code, never by message text.

/** A bad command line: the CLI prints it with the usage and exits 2. */
export class ScenarioArgsError extends Error {
  readonly code = 'ESCENARIOARGS'
  constructor(message: string) {
    super(message)
    this.name = 'ScenarioArgsError'
  }
}

/** Something a run needs failed (an operator action refused by the admin API): the row is reported as an error. */
export class ScenarioRunError extends Error {
  readonly code = 'ESCENARIORUN'
  constructor(message: string) {
    super(message)
    this.name = 'ScenarioRunError'
  }
}
