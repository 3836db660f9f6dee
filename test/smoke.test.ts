import t from 'tap'
import { parseConfig } from '../src/config/load.ts'
t.equal(parseConfig({}, {}).config.api_port, 8000)
