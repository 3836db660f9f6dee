#include-once
; kiosk-vm-watchdog guest scripts: what every script shares. Reads config.ini, writes the log,
; URL-encodes, and sends an HTTP GET with a timeout.
; Written for AutoIt 3.3.8.1, the last release that runs on Windows XP; also runs on later ones.
; AutoIt's InetGet can only GET, which is why the service answers GET on every guest endpoint.

Global $g_sKvwConfig = @ScriptDir & "\config.ini"
Global $g_sKvwName = "kvw"
Global $g_sKvwHostUrl = ""
Global $g_sKvwVm = ""
Global $g_iKvwTimeoutMs = 3000
Global $g_sKvwLogFile = ""

; Reads the [host] and [log] settings; every script calls this first. The config file is the
; first command-line argument, else config.ini beside the script.
Func _KVW_Init($sName)
	$g_sKvwName = $sName
	If $CmdLine[0] >= 1 Then $g_sKvwConfig = $CmdLine[1]
	$g_sKvwLogFile = @TempDir & "\kiosk-vm-watchdog.log"
	If Not FileExists($g_sKvwConfig) Then _KVW_Fatal("config file not found: " & $g_sKvwConfig)
	Local $sLog = _KVW_Read("log", "file", "")
	If $sLog <> "" Then $g_sKvwLogFile = $sLog
	$g_sKvwHostUrl = StringRegExpReplace(_KVW_Read("host", "url", ""), "/+$", "")
	If Not StringRegExp($g_sKvwHostUrl, "^https?://[^/?#]+$") Then
		_KVW_Fatal("[host] url must be the service's base URL, like http://192.168.122.1:8000 (got '" & $g_sKvwHostUrl & "')")
	EndIf
	$g_sKvwVm = _KVW_Read("host", "vm", "")
	$g_iKvwTimeoutMs = _KVW_ReadNumber("host", "timeout_seconds", 3, 1, 60) * 1000
EndFunc

; One setting as text, trimmed, with %VARIABLES% expanded.
Func _KVW_Read($sSection, $sKey, $sDefault)
	Return _KVW_ExpandEnv(StringStripWS(IniRead($g_sKvwConfig, $sSection, $sKey, $sDefault), 3))
EndFunc

; One setting as a number within [min, max]; a bad value is logged and the default used.
Func _KVW_ReadNumber($sSection, $sKey, $nDefault, $nMin, $nMax)
	Local $sValue = _KVW_Read($sSection, $sKey, "")
	If $sValue = "" Then Return $nDefault
	If Not StringRegExp($sValue, "^[0-9]+(\.[0-9]+)?$") Or Number($sValue) < $nMin Or Number($sValue) > $nMax Then
		_KVW_Log("config: [" & $sSection & "] " & $sKey & "=" & $sValue & " is not a number from " & $nMin & " to " & $nMax & "; using " & $nDefault)
		Return $nDefault
	EndIf
	Return Number($sValue)
EndFunc

; A 0/1 setting.
Func _KVW_ReadFlag($sSection, $sKey, $bDefault)
	Local $sValue = _KVW_Read($sSection, $sKey, "")
	If $sValue = "" Then Return $bDefault
	Return StringRegExp($sValue, "^(?i)(1|yes|true|on)$") = 1
EndFunc

Func _KVW_ExpandEnv($sText)
	Local $aNames = StringRegExp($sText, "%([A-Za-z0-9_()]+)%", 3)
	If @error Then Return $sText
	For $i = 0 To UBound($aNames) - 1
		If EnvGet($aNames[$i]) <> "" Then $sText = StringReplace($sText, "%" & $aNames[$i] & "%", EnvGet($aNames[$i]))
	Next
	Return $sText
EndFunc

; True when $sItem is one of the comma-separated $sList (case-insensitive).
Func _KVW_InList($sItem, $sList)
	If $sList = "" Then Return False
	Local $aItems = StringSplit($sList, ",")
	For $i = 1 To $aItems[0]
		If StringStripWS($aItems[$i], 3) <> "" And StringStripWS($aItems[$i], 3) = $sItem Then Return True
	Next
	Return False
EndFunc

; One log line, shared by all scripts; the file moves to .1 past 1 MB.
Func _KVW_Log($sMessage)
	If FileGetSize($g_sKvwLogFile) > 1048576 Then FileMove($g_sKvwLogFile, $g_sKvwLogFile & ".1", 1)
	FileWriteLine($g_sKvwLogFile, @YEAR & "-" & @MON & "-" & @MDAY & " " & @HOUR & ":" & @MIN & ":" & @SEC & " " & $g_sKvwName & ": " & $sMessage)
EndFunc

; A problem no retry can fix: logged, then the script ends (never a message box on a kiosk).
Func _KVW_Fatal($sMessage)
	_KVW_Log("FATAL " & $sMessage)
	ConsoleWriteError($g_sKvwName & ": " & $sMessage & @CRLF)
	Exit 2
EndFunc

; Percent-encodes text as UTF-8 (RFC 3986: letters, digits and - . _ ~ stay as they are).
Func _KVW_UrlEncode($sText)
	Local $bData = StringToBinary($sText, 4)
	Local $sOut = "", $iByte
	For $i = 1 To BinaryLen($bData)
		$iByte = Dec(Hex(BinaryMid($bData, $i, 1)))
		If ($iByte >= 48 And $iByte <= 57) Or ($iByte >= 65 And $iByte <= 90) Or ($iByte >= 97 And $iByte <= 122) _
				Or $iByte = 45 Or $iByte = 46 Or $iByte = 95 Or $iByte = 126 Then
			$sOut &= Chr($iByte)
		Else
			$sOut &= "%" & Hex($iByte, 2)
		EndIf
	Next
	Return $sOut
EndFunc

; GET host url & $sPathAndQuery (vm=... added when [host] vm is set). True when the service
; answered within the timeout; else False with @error 1 (could not start), 2 (timed out),
; 3 (failed: no answer or an HTTP error; @extended = InetGet's error).
Func _KVW_Get($sPathAndQuery)
	Local $sUrl = $g_sKvwHostUrl & $sPathAndQuery
	If $g_sKvwVm <> "" Then
		If StringInStr($sUrl, "?") Then
			$sUrl &= "&vm=" & _KVW_UrlEncode($g_sKvwVm)
		Else
			$sUrl &= "?vm=" & _KVW_UrlEncode($g_sKvwVm)
		EndIf
	EndIf
	Local $sFile = @TempDir & "\kvw-" & @AutoItPID & ".tmp"
	; Options 1 = always from the network (never a cached answer); background = 1, so that the
	; timeout below holds even when the host does not answer at all.
	Local $hGet = InetGet($sUrl, $sFile, 1, 1)
	If @error Or $hGet = 0 Then Return SetError(1, 0, False)
	Local $hTimer = TimerInit()
	While Not InetGetInfo($hGet, 2) And TimerDiff($hTimer) < $g_iKvwTimeoutMs
		Sleep(20)
	WEnd
	Local $bComplete = InetGetInfo($hGet, 2)
	Local $bSuccess = InetGetInfo($hGet, 3)
	Local $iError = InetGetInfo($hGet, 4)
	InetClose($hGet)
	FileDelete($sFile)
	If Not $bComplete Then Return SetError(2, 0, False)
	If Not $bSuccess Then Return SetError(3, $iError, False)
	Return True
EndFunc

; Asks the service to revert this VM to its snapshot, naming why (letters, digits, _ . : , / -).
Func _KVW_RequestRevert($sReason)
	If _KVW_Get("/api/v1/revert/request?reason=" & _KVW_UrlEncode($sReason)) Then
		_KVW_Log("revert requested (reason " & $sReason & ")")
		Return True
	EndIf
	_KVW_Log("revert request (reason " & $sReason & ") failed: error " & @error & "/" & @extended & " from " & $g_sKvwHostUrl)
	Return False
EndFunc

; The first of the comma-separated process names that is not running, or "".
Func _KVW_MissingProcess($sList)
	If $sList = "" Then Return ""
	Local $aNames = StringSplit($sList, ",")
	For $i = 1 To $aNames[0]
		Local $sName = StringStripWS($aNames[$i], 3)
		If $sName <> "" And Not ProcessExists($sName) Then Return $sName
	Next
	Return ""
EndFunc
