/** The runtime's faults, on free internal ports beside a held 12008/12009 (faults.suite.ts). */
import "./faults.suite.js";
