// haraka-constants ships no types; these are the return codes mxgate uses.
declare module 'haraka-constants' {
  const constants: {
    cont: number
    stop: number
    deny: number
    denysoft: number
    denydisconnect: number
    denysoftdisconnect: number
    disconnect: number
    ok: number
    next_hook: number
    connection: { state: { CMD: number; DATA: number; DISCONNECTING: number } }
  }
  export = constants
}
