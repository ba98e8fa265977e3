/** The runtime bundle against the stand-in, on free internal ports beside a held 12008/12009 (start.suite.ts). */
import "./start.suite.js";
