<?php

// The original's file name, so `require_once ".../PixlIPCClient.class.php";` keeps working.
require_once __DIR__ . '/autoload.php';
